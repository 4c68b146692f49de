"""BERT-style encoder from transformers' BertConfig, tiny: int64 token ids in, hidden states out."""
from torch import nn
from transformers import BertConfig, BertModel

VOCAB = 100


class Bert(nn.Module):
    def __init__(self):
        super().__init__()
        config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=32)
        self.net = BertModel(config, add_pooling_layer=False)

    def forward(self, input_ids):
        return self.net(input_ids, return_dict=False)[0]
