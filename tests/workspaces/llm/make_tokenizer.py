"""Train the zoo's tokenizer.json: a byte-level BPE (what ExecuTorch's runner loads for
Llama 3 and Qwen) over the Zen of Python, with <pad>, <s> and </s>. The alphabet is the text's
own characters, so every token decodes to whole UTF-8 characters. Deterministic: rerun it and
the file is the same. Usage: python make_tokenizer.py [OUT] [VOCAB]"""
import codecs
import contextlib
import io
import sys

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers


def train(vocab: int) -> Tokenizer:
    with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the Zen
        import this
    text = codecs.decode(this.s, "rot13").splitlines()
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(text, trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<pad>", "<s>", "</s>"],
                                                            show_progress=False))
    return tokenizer


if __name__ == "__main__":
    out, vocab = (sys.argv[1] if len(sys.argv) > 1 else "tokenizer.json"), int(sys.argv[2]) if len(sys.argv) > 2 else 320
    tokenizer = train(vocab)
    assert tokenizer.get_vocab_size() == vocab, tokenizer.get_vocab_size()
    tokenizer.save(out)
