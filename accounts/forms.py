from django import forms
from django.contrib.auth.forms import UserCreationForm

from .models import User


class RegisterForm(UserCreationForm):
    """Django's sign-up checks (unique username, password rules); `user_register` creates the user."""

    email = forms.EmailField(required=False, help_text="Optional. For account notices only.")

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")
