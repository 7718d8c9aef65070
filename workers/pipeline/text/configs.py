"""The built-in shapes a text classifier trains from scratch in: BERT encoders the sizes of Google's
BERT miniatures (Turc et al., 2019), with a WordPiece vocabulary learnt from the dataset's own train
rows. Constants only, so the web process can list them without importing torch or transformers."""

# name -> BertConfig's shape
TEXT_ARCHITECTURES = {
    "bert-tiny": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512},
    "bert-mini": {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 1024},
    "bert-small": {"hidden_size": 512, "num_hidden_layers": 4, "num_attention_heads": 8, "intermediate_size": 2048},
}
# What a text run's empty settings take (workers/pipeline/text/training.py; the form shows them).
FINE_TUNE_LR, SCRATCH_LR = 5e-5, 5e-4  # the usual BERT fine-tuning rate; random weights learn faster
DEFAULT_WEIGHT_DECAY = 0.01
DEFAULT_MAX_LENGTH = 128
MAX_POSITIONS = 512  # tokens a built-in model reads at most
VOCAB_SIZE = 8000  # WordPiece tokens learnt at most (a small dataset has fewer words)


def parameters(name: str) -> int:
    """About how many weights a built-in model has at its largest vocabulary (for the quota estimate)."""
    shape = TEXT_ARCHITECTURES[name]
    hidden, inner, layers = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    embeddings = (VOCAB_SIZE + MAX_POSITIONS + 2) * hidden
    layer = 4 * hidden * hidden + 2 * hidden * inner
    return embeddings + layers * layer + hidden * hidden  # and the pooler
