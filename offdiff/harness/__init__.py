"""The benchmark harness: grid specs, cluster profiles, submission through submitit, status and resubmission.

Importable on its own, since submitit pickles the job callable (`offdiff.harness.job.GridJob`) by module.
"""
