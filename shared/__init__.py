"""Code the Fabu services share: messages, subjects, settings."""
