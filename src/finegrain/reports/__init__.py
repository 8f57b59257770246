"""What people read: self-contained HTML pages for the KFP UI and MLflow."""
