# Build stage: compile against Debian bookworm's libraries.
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libssl-dev libevent-dev \
      libhiredis-dev libyaml-dev node-llhttp \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY config ./config
COPY gateway ./gateway
COPY policy ./policy
COPY tls ./tls
COPY upstream ./upstream
RUN make -j"$(nproc)" build/portcullis

# Runtime stage: only the shared libraries, an unprivileged user, config mounted.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3 libevent-2.1-7 libevent-pthreads-2.1-7 \
      libhiredis0.14 libyaml-0-2 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --shell /usr/sbin/nologin portcullis
COPY --from=build /src/build/portcullis /usr/local/bin/portcullis
USER portcullis
EXPOSE 8443
VOLUME ["/etc/portcullis"]
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["-c", "/etc/portcullis/portcullis.yaml"]
