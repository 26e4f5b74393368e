"""``make demo``: the FBR simulator, a hub and a sample ERP stream."""
