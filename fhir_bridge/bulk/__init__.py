"""Bulk Data Access ``$export``: jobs pinned to one commit, streamed from the store into NDJSON.

parameters  kick-off parameters, checked before a job exists (400s come from here)
model       the job, its states and transitions, sizes (Limits)
selection   which versions an export holds, read in keyset batches at the pinned commit
ndjson      output lines and the writer that commits them in bounded chunks with the cursor
jobs        jobs and files in the database: leases, fenced writes, cancel, retention
runner      one job from its cursor to the end
worker      background threads that claim and run jobs
manifest    the completion manifest and progress text
service     the facade the API uses
"""
