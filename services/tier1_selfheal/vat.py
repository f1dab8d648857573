"""Tax-id validation: moved to the billing core (``tierline.billing.vat``); re-exported for Tier 1."""

from __future__ import annotations

from tierline.billing.vat import (
    EU_VAT,
    SUPPORTED_COUNTRIES,
    InvalidTaxId,
    TaxId,
    checksum_ok,
    validate_tax_id,
)

__all__ = ["EU_VAT", "SUPPORTED_COUNTRIES", "InvalidTaxId", "TaxId", "checksum_ok", "validate_tax_id"]
