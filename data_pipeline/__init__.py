"""Documents in, leak-free tf.data batches out: load, clean, split, tokenize, batch."""
