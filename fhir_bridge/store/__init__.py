"""The versioned resource store: tables, the commit order, the single write path, history."""
