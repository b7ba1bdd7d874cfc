"""Settings: every setting's type and range, and the checks of a composed config."""
