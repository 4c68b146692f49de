"""Real architectures from transformers, built from tiny configs (no downloads)."""
import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel, MobileNetV2Config, MobileNetV2ForImageClassification
from transformers import ResNetConfig, ResNetForImageClassification


class Logits(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, pixel_values):
        return self.net(pixel_values, return_dict=False)[0]


def resnet():
    """ResNet: convolutions with BatchNorm, a residual shortcut and max pooling."""
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_channels=3, num_labels=4)
    return Logits(ResNetForImageClassification(config))


def mobilenet():
    """MobileNetV2: depthwise convolutions with BatchNorm."""
    return Logits(MobileNetV2ForImageClassification(MobileNetV2Config(depth_multiplier=0.35, image_size=32, num_labels=4)))


class GPT2(nn.Module):
    """GPT-2 with its default (scaled_dot_product_attention) attention: token ids in, logits out."""

    def __init__(self):
        super().__init__()
        config = GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=64, n_positions=32, use_cache=False,
                            bos_token_id=63, eos_token_id=63, attn_implementation="sdpa")
        self.net = GPT2LMHeadModel(config)

    def forward(self, input_ids):
        return self.net(input_ids, use_cache=False, return_dict=False)[0]


class Digamma(nn.Module):
    """An op Core ML has no conversion for, and torch no core-ATen decomposition of."""

    def forward(self, x):
        return torch.digamma(x.abs() + 1)
