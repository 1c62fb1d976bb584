"""crt: the one place a step gets its dataset's facts (``dataset.facts``): VOC or COCO behind one interface."""
