"""Guarded answers at inference time: deployment and profile rules with retry-or-refuse (`check`), the
contradiction check against current facts (`contradiction`), and the reward model's rerank of candidates
(`rerank`). Training the reward model belongs to `dilm.learning`."""
