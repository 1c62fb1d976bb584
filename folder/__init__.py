"""A dataset of the user's own (``--dataset folder --folder_root DIR``, docs/data_folder.md).

One job per module: :mod:`folder.layout` (the files, the root check, the errors), :mod:`folder.facts` (the classes
of classes.txt), :mod:`folder.index` (:class:`~folder.index.FolderIndex`), :mod:`folder.build` (checking, caching
and opening the index: :func:`~folder.build.open_folder`), :mod:`folder.synthetic` (a small synthetic folder).
"""
