"""Search: index extraction at write time, query parsing and SQL compilation at read time."""
