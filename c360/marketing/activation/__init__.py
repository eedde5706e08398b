"""Marketing activation: sync each night's segment changes to destinations such as a CRM API (docs/destinations.md)."""
