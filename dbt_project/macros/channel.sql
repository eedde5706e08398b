{#
  Marketing channel of a session, from its landing event: campaign parameters first (utm_medium, utm_source),
  then the referrer, else direct. docs/feature_store.md lists the values.
#}
{% macro marketing_channel(utm_source, utm_medium, utm_campaign, referrer) -%}
    {%- set social = "'facebook', 'instagram', 'twitter', 'x', 'linkedin', 'pinterest', 'tiktok', 'youtube', 'reddit', 'snapchat'" -%}
    case
        when lower({{ utm_medium }}) in ('paid_social', 'paidsocial', 'social_paid')
          or (lower({{ utm_medium }}) in ('cpc', 'ppc', 'paid', 'cpm') and lower({{ utm_source }}) in ({{ social }}))
            then 'paid_social'
        when lower({{ utm_medium }}) in ('cpc', 'ppc', 'paid_search', 'paidsearch', 'sem')            then 'paid_search'
        when lower({{ utm_medium }}) in ('email', 'e-mail', 'newsletter', 'crm')                     then 'email'
        when lower({{ utm_medium }}) in ('affiliate', 'affiliates', 'partner')                       then 'affiliate'
        when lower({{ utm_medium }}) in ('display', 'banner', 'cpm', 'programmatic')                 then 'display'
        when lower({{ utm_medium }}) in ('organic', 'seo', 'organic_search')                         then 'organic_search'
        when lower({{ utm_medium }}) in ('social', 'organic_social', 'social_organic')               then 'social'
        when lower({{ utm_medium }}) = 'referral'                                                    then 'referral'
        when coalesce({{ utm_medium }}, {{ utm_source }}, {{ utm_campaign }}) is not null            then 'campaign'
        when {{ regex_contains('lower(' ~ referrer ~ ')', '(google|bing|duckduckgo|yahoo|ecosia|baidu|yandex|qwant)\.') }}
            then 'organic_search'
        when {{ regex_contains('lower(' ~ referrer ~ ')', '(facebook|instagram|twitter|linkedin|pinterest|tiktok|youtube|reddit|snapchat)\.|//t\.co/|//x\.com') }}
            then 'social'
        when {{ referrer }} is not null                                                             then 'referral'
        else 'direct'
    end
{%- endmacro %}
