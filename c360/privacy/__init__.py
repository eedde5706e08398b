"""Privacy operations on the customer data: erasure of one customer everywhere it was copied (c360.privacy.erasure)."""
