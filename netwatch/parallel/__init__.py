"""Scanning many captures at once: tasks, worker processes (`scan -j`), a Dask cluster (`scan --cluster`).

A *task* is one input file, or one byte range of a large pcap file; a worker analyses it with
state of its own and sends back a compact result (findings, per-device summaries, counters), and
the client merges the results in input order, exactly as a serial scan does.
"""
