"""What frogs writes and reads back: atomic files, the cache, checkpoints, records, status."""
