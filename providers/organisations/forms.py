from __future__ import annotations

from django import forms


class TokenForm(forms.Form):
    """The token the organisation's command printed. Never rendered back."""

    token = forms.CharField(
        label="Token",
        strip=True,
        max_length=16 * 1024,
        widget=forms.PasswordInput(
            render_value=False, attrs={"autocomplete": "off", "spellcheck": "false"}
        ),
        help_text="Run the command above on your own machine and paste what it prints.",
    )
