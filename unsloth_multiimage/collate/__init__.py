"""What the patches share to collate a batch: release capabilities, masks, and packing."""
