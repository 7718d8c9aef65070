"""Text classification: datasets of rows, Hugging Face sequence classifiers, tokenizing. No Django."""
