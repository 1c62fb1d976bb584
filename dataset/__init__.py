"""crt: what serves every segmentation dataset (VOC, COCO, a user's own): reading images, the torch datasets of the
training steps and the DeepLab datasets. Dataset-neutral: a dataset's index gives the image of an id
(``image_path``), its labels and its number of label values."""
