"""The versioned resource store: tables, the commit order, the single write path, history.

``schema`` is what the packages above may build statements against (tables, validity at a seq);
``tables`` is the store's own. The store imports nothing from search: its index rows come from the
indexer it is handed, and it runs the read statements it is given.
"""
