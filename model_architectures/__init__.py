"""One builder per model family, each mapping token ids to next-token logits at every position."""
