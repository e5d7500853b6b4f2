"""Files and images: atomic writes, image reading and writing, lazy block sources, image/label
folders, and the image checks and normalization shared by training and the runtime."""
