"""crt: CUB-200-2011 for the WSOL part (docs/wsol_cub.md).

``cub.dataset``: reader of the official CUB_200_2011 folder, train / eval datasets and the held-out list;
``cub.synthetic``: a small synthetic dataset in the same layout. Nothing is imported or read here.
"""
