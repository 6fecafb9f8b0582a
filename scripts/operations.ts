/**
 * GraphQL operations the statement-count tests, the index test and `npm run bench:n1` share: the
 * pages a storefront really renders.
 */

/** A storefront's product list: each product with its rating and newest reviews, and each review's author. */
export const STOREFRONT_PAGE = /* GraphQL */ `
  query StorefrontPage($first: Int!) {
    products(first: $first) {
      edges {
        node {
          id
          title
          price {
            amountCents
            currency
          }
          averageRating
          reviews(first: 5) {
            edges {
              node {
                id
                rating
                body
                author {
                  id
                  displayName
                }
              }
            }
            pageInfo {
              hasNextPage
              endCursor
            }
          }
        }
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`;

/** A page of users, each with their newest reviews and the reviewed product's title. */
export const USERS_PAGE = /* GraphQL */ `
  query UsersPage($first: Int!) {
    users(first: $first) {
      edges {
        node {
          id
          displayName
          reviews(first: 5) {
            edges {
              node {
                id
                rating
                product {
                  id
                  title
                }
              }
            }
          }
        }
      }
    }
  }
`;

export const PRODUCTS_BY_PRICE = /* GraphQL */ `
  query ProductsByPrice(
    $status: ProductStatus
    $direction: OrderDirection!
    $first: Int
    $after: String
    $last: Int
    $before: String
  ) {
    products(
      filter: { status: $status }
      orderBy: { field: PRICE, direction: $direction }
      first: $first
      after: $after
      last: $last
      before: $before
    ) {
      edges {
        cursor
        node {
          id
          priceCents: price {
            amountCents
          }
        }
      }
      pageInfo {
        hasNextPage
        hasPreviousPage
        startCursor
        endCursor
      }
    }
  }
`;

export const PRODUCTS_BY_DATE = /* GraphQL */ `
  query ProductsByDate($status: ProductStatus, $first: Int, $after: String, $last: Int, $before: String) {
    products(filter: { status: $status }, first: $first, after: $after, last: $last, before: $before) {
      edges {
        cursor
        node {
          id
          createdAt
        }
      }
      pageInfo {
        hasNextPage
        hasPreviousPage
        startCursor
        endCursor
      }
    }
  }
`;

export const USERS_LIST = /* GraphQL */ `
  query Users($first: Int, $after: String, $last: Int, $before: String) {
    users(first: $first, after: $after, last: $last, before: $before) {
      edges {
        cursor
        node {
          id
        }
      }
      pageInfo {
        hasNextPage
        hasPreviousPage
        startCursor
        endCursor
      }
    }
  }
`;

export const PRODUCT_REVIEWS = /* GraphQL */ `
  query ProductReviews($id: ID!, $first: Int, $after: String, $last: Int, $before: String) {
    product(id: $id) {
      id
      reviewCount
      reviews(first: $first, after: $after, last: $last, before: $before) {
        edges {
          cursor
          node {
            id
            createdAt
          }
        }
        pageInfo {
          hasNextPage
          hasPreviousPage
          startCursor
          endCursor
        }
      }
    }
  }
`;

export const USER_REVIEWS = /* GraphQL */ `
  query UserReviews($id: ID!, $first: Int, $after: String, $last: Int, $before: String) {
    user(id: $id) {
      id
      email
      reviews(first: $first, after: $after, last: $last, before: $before) {
        edges {
          cursor
          node {
            id
            product {
              id
              title
            }
          }
        }
        pageInfo {
          hasNextPage
          hasPreviousPage
          startCursor
          endCursor
        }
      }
    }
  }
`;

export const REVIEW_BY_ID = /* GraphQL */ `
  query Review($id: ID!) {
    review(id: $id) {
      id
      rating
      author {
        id
        displayName
      }
      product {
        id
        title
        reviewCount
      }
    }
  }
`;
