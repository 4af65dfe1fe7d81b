"""The model families (tfidf, bert, use, ensemble): one module or folder each."""
