"""Memory: embeddings, the vector index, hybrid retrieval and the memory writer (through the store, no SQL)."""
