"""MobileNetV2-style: inverted residual blocks with depthwise convs, BatchNorm and ReLU6,
written as torchvision writes them (transformers' MobileNetV2 has a fixed 17 blocks; this
keeps the architecture and drops most of the depth)."""
from torch import nn

from models.init import lively


class ConvBNReLU(nn.Sequential):  # torchvision's Conv2dNormActivation
    def __init__(self, cin, cout, kernel=3, stride=1, groups=1, act=True):
        layers = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        super().__init__(*layers, *([nn.ReLU6(inplace=True)] if act else []))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.use_res_connect = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            ConvBNReLU(cin, hidden, kernel=1),
            ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),  # depthwise
            ConvBNReLU(hidden, cout, kernel=1, act=False),  # linear bottleneck
        )

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(
            ConvBNReLU(3, 8, stride=2),
            InvertedResidual(8, 8, 1, expand=1),
            InvertedResidual(8, 16, 2, expand=4),
            InvertedResidual(16, 16, 1, expand=4),
            ConvBNReLU(16, 64, kernel=1),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, num_classes))
        lively(self)

    def forward(self, pixel_values):
        x = self.features(pixel_values)
        return self.classifier(x.mean((2, 3)))
