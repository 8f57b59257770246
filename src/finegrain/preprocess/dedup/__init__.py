"""Near-duplicate machinery: perceptual hashes, candidate search, the pixel confirmation."""
