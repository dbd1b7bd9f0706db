"""Search: index rows at write time, query parsing and SQL compilation at read time.

Above the store (``interactions -> search -> store``): the store is handed ``index.index_entries``
and runs the statements compiled here.

    query              parse a FHIR search into a SearchQuery
    values             value semantics shared by indexing and querying (strings, dates, numbers, prefixes)
    parameter_types/   one module per type: its index rows and its SQL predicate
    index              the index rows of a resource (the store's indexer)
    criteria           one criterion on the version rows (:missing, :not, _id, _lastUpdated)
    chains             chains and _has; clause_condition
    planner            which clause drives; date ranges bounded through idx_date_width
    compartments       Patient compartment membership
    paging             sorting and keyset paging
    shapes             compiled statements shared by searches that differ only in their values
    compiler           compile_search: one SELECT (or COUNT) for a SearchQuery, with the values to bind
    includes           _include / _revinclude
    runner             run searches through the store's read and write-session APIs
    batches            pk-ordered batches of the versions at one commit (bulk export)
    index_rows         index rows valid at one commit, for aggregates (catalogue statistics)
"""
