"""The training path shared by every training stage: model loading, TRL arguments, the trainer mixin, callbacks."""
