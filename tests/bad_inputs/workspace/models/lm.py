"""Language models for the llm_program rows: a tiny causal LM (64 tokens, 32 positions) and an
encoder that is not one."""
from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM


def tiny_lm():
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, max_position_embeddings=32)).eval()


def encoder():
    return BertModel(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=64)).eval()
