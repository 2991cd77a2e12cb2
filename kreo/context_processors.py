from django.conf import settings


def release(request):
    return {"kreo_release": settings.KREO_RELEASE}
