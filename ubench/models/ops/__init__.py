"""Building blocks shared by several models (encoders, attention gates, scans)."""
