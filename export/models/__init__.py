"""Model definitions (U-Net here; Mask R-CNN comes from torchvision)."""
