"""Tiny causal LMs from transformers configs: Llama, Qwen3, Phi-3 and Gemma shapes, a few
layers wide enough for XNNPACK's 8da4w groups (32), with the zoo tokenizer's vocabulary.

Random weights give nearly flat logits, where any rounding flips the greedy token. `peaked`
scales the output head so that the next token is a clear choice, as in a trained model: the
check then measures the program, not the tie-breaking of noise."""
import torch
from transformers import (
    GemmaConfig,
    GemmaForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

VOCAB = 320  # tokenizer.json's size (make_tokenizer.py)
SHAPE = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def peaked(model, scale: float = 8.0):
    with torch.no_grad():
        model.lm_head.weight.mul_(scale)
    return model.eval()


def tiny_llama():
    return peaked(LlamaForCausalLM(LlamaConfig(**SHAPE, tie_word_embeddings=False)))


def tiny_qwen3():
    return peaked(Qwen3ForCausalLM(Qwen3Config(**SHAPE, head_dim=16, tie_word_embeddings=False)))


def tiny_phi3():
    return peaked(Phi3ForCausalLM(Phi3Config(**SHAPE, original_max_position_embeddings=256, tie_word_embeddings=False)))


def tiny_gemma():
    return peaked(GemmaForCausalLM(GemmaConfig(**SHAPE, head_dim=16, tie_word_embeddings=False)))


def not_a_causal_lm():
    """An encoder: what llm_program refuses."""
    from transformers import BertConfig, BertModel

    return BertModel(BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=64)).eval()
