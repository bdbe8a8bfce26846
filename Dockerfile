# One image for all five services; choose the service with the command:
#   docker run <image> services.api   (or services.renderer, .deployer, .tracker, .notifier)
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml constraints.txt ./
COPY services ./services
COPY shared ./shared
COPY cli ./cli
RUN pip install --no-cache-dir --prefix=/install -c constraints.txt .

FROM python:3.11-slim-bookworm
# git: the renderer reads templates from Git repositories.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git=1:2.39.* \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --create-home fabu
COPY --from=build /install /usr/local
USER 10001
ENV PYTHONUNBUFFERED=1 FABU_HTTP_HOST=0.0.0.0
EXPOSE 8000 8080
ENTRYPOINT ["python", "-m"]
CMD ["services.api"]
