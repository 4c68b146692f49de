"""The steps of a language-model program: inspect, tokenizer, export, lower, verify."""
