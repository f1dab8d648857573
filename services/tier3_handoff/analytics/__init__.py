"""The analyst stream: outcomes, audit events and case resolutions in ClickHouse, with views and reports."""
