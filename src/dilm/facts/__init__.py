"""Facts: statement analysis and extraction (rules EN/ZH, or a model), known answers, and the bi-temporal fact API."""
