"""Small models for the step tests: each exercises one option or one hazard."""
import torch


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(64, 128)
        self.fc2 = torch.nn.Linear(128, 64)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def prequantized():
    """A model its team quantized in Python with torchao (int8 weight-only) before handing it over."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    model = MLP()
    quantize_(model, Int8WeightOnlyConfig(set_inductor_config=False))
    return model


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        y = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(y.mean(dim=(2, 3)))


class Pair(torch.nn.Module):
    """Two inputs that share their dynamic batch."""

    def forward(self, x, y):
        return torch.tanh(x) * y + x


class Branchy(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x.sin()
        return x.cos()
