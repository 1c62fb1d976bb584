"""The run report (``result/report.html``, written by ``step/report.py``) and the pictures a person looks at.

``run_folder`` reads a run's records, ``paper`` holds the paper's figures and which numbers compare with them,
``sections`` builds the page's sections from them, ``gallery`` the image galleries, ``plots`` the matplotlib figures
and ``html`` the HTML pieces and the page around them; ``vis`` draws the PNGs the steps save. Nothing here imports a
dataset package: the caller passes the dataset's label names and file layout in (``sections.DatasetView``).
"""
