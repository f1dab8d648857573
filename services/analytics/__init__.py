"""The analytics service: outcomes, audit events and case resolutions in ClickHouse, with views, the
daily drift check, the analytics API and the analysts' commands (`tierline report`, `tierline audit`)."""
