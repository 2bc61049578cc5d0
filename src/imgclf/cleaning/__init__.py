"""cleaning: find what is wrong with a dataset, review it, fix it without losing a file.

finding.py (find_issues: label errors, off-topic pictures, copies) -> review.py (the review
page of `imgclf clean --review`) -> fixes.py (decisions applied as logged moves, and undone).
"""
