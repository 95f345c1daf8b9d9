{#- A keyed-hash column holds only SHA-256 hex digests (or null): never a raw value that slipped through. -#}
{% test is_hex_sha256(model, column_name) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} is not null
    and not {{ regex_full_match(column_name, '[0-9a-f]{64}') }}
{% endtest %}
