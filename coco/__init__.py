"""crt: MS COCO 2014 as a WSSS dataset (docs/data_coco.md).

``coco.dataset``: the public names of the data layer (the index of the official folder: lists, image-level labels,
the category mapping, image records; ground-truth class masks and instances built from the instance annotations
with pycocotools) and its CLI; ``coco.synthetic``: a small synthetic folder in the same layout. Nothing is imported
or read here.
"""
