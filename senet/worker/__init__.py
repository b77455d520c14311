"""The workers that drain the queue: claim, train, report; processes and GPU shares."""
