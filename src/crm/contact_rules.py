"""The contact-detail rules (what an email or a phone number looks like), defined once, in the dbt
project's vars (``contact_rules`` in dbt_project.yml): the staging models, the free-text masking, the
BI copy's guard and erasure's search all use these, in SQL and in Python alike.
"""

from __future__ import annotations

from crm.settings import dbt_project_vars

_RULES: dict[str, str] = dbt_project_vars()["contact_rules"]

# An email address or a phone number anywhere in a text.
EMAIL_IN_TEXT = _RULES["email_in_text"]
PHONE_IN_TEXT = _RULES["phone_in_text"]
# A valid email (lower-cased, trimmed) and phone number (digits and a leading +), matched whole.
VALID_EMAIL = _RULES["valid_email"]
VALID_PHONE = _RULES["valid_phone"]
