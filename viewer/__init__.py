"""`assay ui`: a read-only web viewer of the dataset registry, the model store and the jobs.

Pages are rendered on the server from Lance reads that fetch one page of rows (or one column
for a histogram) at a time, so the browser never receives, and the server never holds, a whole
dataset. See docs/ui.md.
"""
